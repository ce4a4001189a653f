# Pure node logic (no machine imports): runs on boards and on the host.

"""Audit: re-verify what the server stored, without trusting the server.

    verify.verify_store(store)      envelopes + node tags + stored columns, from the database
    verify.verify_archive(path)     the same from an archive file (archive.write_archive)

Only public gateway keys and node keys are used; no server process is involved. Problems
are reported, never raised: a report lists every envelope or record that does not verify.
"""

# The node's code, deployed to a board as /lib/metro. Subpackages:
#   wire  - the node wire format (records, HMAC tags, frames); the gateway imports it
#   core  - pure node logic (sequence numbers, ...): no machine import, host-testable

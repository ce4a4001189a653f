"""The on-site gateway: verify node records, keep them durably, sign and forward."""

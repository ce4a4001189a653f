"""Audit: re-verify what the server stored, without trusting the server.

    verify.verify_store(store, trusted)    envelopes + node tags + stored columns, from the database
    verify.verify_archive(path, trusted)   the same from an archive file (archive.write_archive)
    trust.load(key_files, node_key_files)  keys obtained apart from the server (`trusted`)

Only public gateway keys and node keys (secret: node tags are HMACs) are used; no server
process is involved. Without trusted keys they come from the verified source itself, which
then only proves that it agrees with itself; the report says which (`Report.trust`).
Problems are reported, never raised: a report lists every envelope or record that does not
verify.
"""

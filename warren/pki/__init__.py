"""Warren's public-key infrastructure: the cluster CA, node certificates, CA-pinned join tokens and
the cluster data key that seals secrets (and the CA key) in the replicated state.

- `certs`: create the CA, node keys and CSRs; sign a CSR into a role certificate; read a peer's
  identity back from its certificate.
- `sealing`: AES-256-GCM under the cluster data key.
- `material`: where a node keeps its key, certificate and CA (files 0600), and the TLS contexts
  built from them.

See docs/security.md.
"""

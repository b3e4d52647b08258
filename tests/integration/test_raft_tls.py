"""Mutual TLS on the Raft transport: real node processes with the PEM fixtures of warren-raft
(rust/tests/fixtures, made by make_certs.py: every node certificate is for DNS "raft-peer").

What must hold: a TLS cluster commits; a plain-TCP client or one with a certificate from another CA is
refused without disturbing anyone; a rogue node that believes it belongs to the cluster cannot start an
election there; a node renews its certificate with no failed proposal.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
import threading
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.checks import converge, propose_all, with_prefix
from tests.integration.cluster import (
    CERTS,
    FIXTURES,
    PEER_NAME,
    Cluster,
    MetricsByNode,
    NodeProc,
    RemoteError,
    TlsOptions,
    read_until_closed,
)

# A TimeoutNow request (postcard: Message::Request, id 7, Request::TimeoutNow) in its length-prefixed
# frame, and the start of its answer (Message::Response, id 7, Response::TimeoutNow).
TIMEOUT_NOW = struct.pack(">I", 3) + b"\x00\x07\x03"
TIMEOUT_NOW_ANSWER = b"\x01\x07\x03"


def fingerprint(stem: str) -> str:
    cert = x509.load_pem_x509_certificate((FIXTURES / f"{stem}.pem").read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def start_tls_cluster(cluster: Cluster) -> NodeProc:
    for node_id, stem in CERTS.items():
        cluster.add_node(node_id, TlsOptions(stem=stem))
    return cluster.start(3)


def tls_client(stem: str) -> ssl.SSLContext:
    """A client that trusts the cluster CA and presents certificate `stem`."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(FIXTURES / "ca.pem")
    ctx.load_cert_chain(FIXTURES / f"{stem}.pem", FIXTURES / f"{stem}.key")
    return ctx


def ask_timeout_now(node: NodeProc, stem: str) -> bytes:
    """Send TimeoutNow over TLS with certificate `stem`; returns what came back before the node closed
    (the answer frame if it accepted the client; nothing if it refused it)."""
    with socket.create_connection((node.host, node.port), timeout=5) as raw:
        with tls_client(stem).wrap_socket(raw, server_hostname=PEER_NAME) as tls:
            # TLS 1.3: the client's handshake ends before the server has checked its certificate, so a
            # refusal arrives as an alert on the first read.
            try:
                tls.sendall(TIMEOUT_NOW)
            except (ssl.SSLError, ConnectionError):
                return b""
            if stem in CERTS.values():
                tls.settimeout(5)
                return tls.recv(4096)
            return read_until_closed(tls)


def assert_undisturbed(before: MetricsByNode, after: MetricsByNode, leader: NodeProc) -> None:
    for node_id in CERTS:
        assert after[node_id]["term"] == before[node_id]["term"], f"node {node_id} changed term"
        assert after[node_id]["leader_id"] == leader.id, f"node {node_id} lost its leader"


def test_tls_cluster_commits_and_refuses_plain_and_foreign_clients(cluster: Cluster) -> None:
    leader = start_tls_cluster(cluster)
    acked, last = propose_all(leader, "tls-", 20)
    assert with_prefix(converge(cluster, last), "tls-") == acked
    before = cluster.metrics()
    assert all(m["tls"] for m in before.values())
    assert all(m["tls_handshake_failures"] == 0 for m in before.values()), before
    follower = next(p for p in cluster.live() if p is not leader)

    # Plain TCP: a well-formed Raft frame gets at most a TLS alert back, then the connection closes.
    with socket.create_connection((follower.host, follower.port), timeout=5) as plain:
        plain.sendall(TIMEOUT_NOW)
        answer = read_until_closed(plain)
    assert answer == b"" or answer[0] == 0x15, f"plain client got {answer!r}"

    # A certificate from another CA: refused, though the client itself accepts the node's certificate.
    assert ask_timeout_now(follower, "rogue") == b""

    after = cluster.metrics()
    assert_undisturbed(before, after, leader)
    assert after[follower.id]["tls_handshake_failures"] >= before[follower.id]["tls_handshake_failures"] + 2
    acked, last = propose_all(leader, "after-", 10)
    assert with_prefix(converge(cluster, last), "after-") == acked

    # The same probe with a cluster certificate is served (the follower then campaigns, as asked):
    # the refusals above came from the certificates, not from a broken client.
    answer = ask_timeout_now(follower, "node-c")
    assert answer[4:7] == TIMEOUT_NOW_ANSWER, f"accepted client got {answer!r}"


def test_rogue_node_with_a_foreign_certificate_cannot_disturb_the_cluster(cluster: Cluster) -> None:
    leader = start_tls_cluster(cluster)
    before = cluster.metrics()
    # The cluster's CA certificate is public, so the rogue trusts it and accepts the members' certificates;
    # its own comes from another CA.
    rogue = cluster.add_node(4, TlsOptions(stem="rogue"))
    rogue.start()
    rogue.wait_ready()
    # The rogue believes it is a voter of this cluster and campaigns for votes from every member.
    rogue.call("bootstrap", members=cluster.members([1, 2, 3, 4]))
    members = [cluster.nodes[i] for i in CERTS]

    def rogue_campaigned(ms: MetricsByNode) -> bool:
        assert_undisturbed(before, ms, leader)  # checked at every poll, not only at the end
        return bool(rogue.metrics()["term"] >= 4)

    # Four of the rogue's elections: four election timeouts of it knocking on every member's port.
    after = cluster.wait_for(rogue_campaigned, 15.0, "the rogue node to campaign four times", members)
    assert_undisturbed(before, after, leader)
    assert after[leader.id]["tls_handshake_failures"] > before[leader.id]["tls_handshake_failures"]
    assert rogue.metrics()["role"] == "candidate"
    acked, last = propose_all(leader, "rogue-", 10)
    assert with_prefix(converge(cluster, last, members), "rogue-") == acked
    assert not with_prefix(rogue.state(), "rogue-")


def propose_until_committed(cluster: Cluster, payload: str, timeout: float = 15.0) -> int:
    """Propose on whichever node leads until one proposal commits; returns its index."""
    deadline = time.monotonic() + timeout
    while True:
        leader = cluster.leader(timeout=max(0.1, deadline - time.monotonic()))
        try:
            result: dict[str, Any] = leader.call("propose", data=payload, timeout=5)
            return int(result["index"])
        except RemoteError:
            if time.monotonic() >= deadline:
                raise


def test_certificate_renewal_fails_no_proposal(cluster: Cluster) -> None:
    leader = start_tls_cluster(cluster)
    start_index = cluster.metrics()[leader.id]["commit_index"]
    errors: list[BaseException] = []
    acked: list[int] = []

    def propose() -> None:
        try:
            acked.extend(leader.call("propose_many", count=1500, prefix="swap-", timeout=120))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    proposer = threading.Thread(target=propose)
    proposer.start()
    try:
        cluster.wait_for(
            lambda ms: ms[leader.id]["commit_index"] >= start_index + 100,
            30.0,
            "proposals before the swap",
            [leader],
        )
        leader.call(
            "update_tls",
            ca=str(FIXTURES / "ca.pem"),
            cert=str(FIXTURES / "node-a-renewed.pem"),
            key=str(FIXTURES / "node-a-renewed.key"),
            peer_name=PEER_NAME,
        )
        assert proposer.is_alive(), "the proposals ended before the certificate was swapped"
    finally:
        proposer.join(timeout=130)
    assert not errors, f"a proposal failed during the certificate swap: {errors[0]!r}"
    assert len(acked) == 1500

    # New connections use the renewed certificate: once the followers revoke the leader's old one
    # (closing every connection made with it), the cluster still commits.
    old = fingerprint(CERTS[leader.id])
    for p in cluster.live():
        if p is not leader:
            p.call("set_revoked", fingerprints=[old])
    index = propose_until_committed(cluster, "after-revoke")
    cluster.wait_applied(index)
    assert all(m["tls_handshake_failures"] == 0 for m in cluster.metrics().values())

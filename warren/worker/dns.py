"""The worker's DNS server: service names answered from the endpoints this worker holds
(warren.worker.endpoints), everything else forwarded to the host's own nameservers.

- `NAME`, `NAME.warren`: A records of the service's healthy replicas (each once; the order rotates per
  query: round-robin); `tasks.NAME`, `tasks.NAME.warren`: every replica. AAAA gives the IPv6 ones
  (none today: empty NOERROR). Names are case-insensitive; TTL 1 s, so answers follow the cluster.
- An unknown name under `.warren`: NXDOMAIN (SERVFAIL while the worker has heard no endpoints yet: it
  does not know). Any other name, including an unknown bare name: forwarded to the nameservers of
  /etc/resolv.conf (not this server), waiting a bounded time; SERVFAIL if none answers.
- UDP and TCP on each address it listens on (one worker serves its process tasks on dns_addr and its
  Docker containers on their network's gateway, port 53, from the same table); packets are parsed by
  dnspython (malformed ones are dropped), at most `max_forwards` forwards at once, a UDP answer over the
  client's size (512 bytes without EDNS) is sent truncated (TC set) so the client asks again over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from warren.worker.endpoints import ZONE, Endpoints

log = logging.getLogger(__name__)

UDP_PLAIN_SIZE = 512  # a client without EDNS takes no more (RFC 1035)
UDP_MAX_SIZE = 4096  # cap on what a client's EDNS payload size may ask for
TCP_IDLE_S = 10.0  # a TCP client silent this long is closed
MAX_TCP_CONNECTIONS = 64
RESOLV_CONF = "/etc/resolv.conf"
ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)

Upstream = tuple[str, int]


def resolv_conf_nameservers(path: str = RESOLV_CONF) -> list[str]:
    """The `nameserver` addresses of a resolv.conf (unreadable or none: [])."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(65536)
    except OSError:
        return []
    found: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                found.append(str(ipaddress.ip_address(parts[1].split("%", 1)[0])))
            except ValueError:
                continue
    return found[:8]


class DnsServer:
    """`await start()`, then `address`; more addresses with `await listen(host, port)`; `await stop()`.
    Every address answers alike, from one table, one rotation and one bound on forwards (a worker serves
    its process tasks on dns_addr and its containers on their network's gateway). `lookup()` gives the
    endpoints to answer from (None: none heard yet); `upstreams` the servers other names go to (None:
    resolv.conf's, port 53, read at start, minus this server's own addresses)."""

    def __init__(
        self,
        lookup: Callable[[], Endpoints | None],
        *,
        host: str | None,
        port: int,
        ttl_s: int,
        forward_timeout_s: float,
        max_forwards: int,
        upstreams: Sequence[Upstream] | None = None,
    ) -> None:
        self.lookup = lookup
        self.host = host  # the first address `start` listens on (None: none; `listen` adds them)
        self.port = port
        self.ttl_s = ttl_s
        self.forward_timeout_s = forward_timeout_s
        self.upstreams: list[Upstream] = list(upstreams) if upstreams is not None else []
        self._given_upstreams = upstreams is not None
        self._forwards = asyncio.Semaphore(max_forwards)
        self._turn: dict[str, int] = {}  # per name: how far its next answer is rotated
        self._listeners: list[_Listener] = []
        self._tcp_count = 0
        self._pending: set[asyncio.Task[None]] = set()
        self.zone = dns.name.from_text(ZONE)

    @property
    def address(self) -> tuple[str, int]:
        """Where `start` made it listen (the port the system gave for port 0)."""
        if self.host is None:
            raise RuntimeError("the DNS server was started without an address of its own")
        return self.host, self.port

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every address it listens on, in the order they were added."""
        return [(listener.host, listener.port) for listener in self._listeners]

    async def start(self) -> None:
        if not self._given_upstreams:
            self.upstreams = [(ns, 53) for ns in resolv_conf_nameservers()]
        if self.host is not None:
            self.host, self.port = await self.listen(self.host, self.port)
        log.info("names that are not the cluster's are forwarded to %s",
                 ", ".join(f"{h}:{p}" for h, p in self.upstreams) or "nobody (SERVFAIL)")

    async def listen(self, host: str, port: int) -> tuple[str, int]:
        """Answer on `host`:`port` too, UDP and TCP (port 0: one the system picks); the address bound.
        OSError if UDP cannot bind (a TCP port that is taken is logged: UDP answers, large answers come
        truncated)."""
        loop = asyncio.get_running_loop()
        listener = _Listener(host, port)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self, listener), local_addr=(host, port)
        )
        listener.udp = transport
        listener.port = int(transport.get_extra_info("sockname")[1])
        try:
            listener.tcp = await asyncio.start_server(self._serve_tcp, host, listener.port)
        except OSError as exc:
            log.warning("DNS over TCP not served on %s:%d: %s", host, listener.port, exc)
        self._listeners.append(listener)
        if not self._given_upstreams:  # never forward to itself
            self.upstreams = [u for u in self.upstreams if u not in self.addresses]
        log.info("service names answered by DNS at %s:%d (UDP%s)", host, listener.port,
                 "" if listener.tcp is None else ", TCP")
        return host, listener.port

    async def stop(self) -> None:
        for listener in self._listeners:
            if listener.udp is not None:
                listener.udp.close()
            if listener.tcp is not None:
                listener.tcp.close()
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        for listener in self._listeners:
            if listener.tcp is not None:
                with contextlib.suppress(Exception):
                    await listener.tcp.wait_closed()

    # -- answering --------------------------------------------------------------------------------

    async def answer(self, wire: bytes, *, udp: bool) -> bytes | None:
        """The answer to one query (None: malformed, dropped); over UDP, no larger than the client takes
        (512 bytes, or its EDNS size up to UDP_MAX_SIZE)."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # dnspython raises many kinds for bad packets; a bad packet is dropped
            log.debug("dropped a malformed DNS packet (%d bytes)", len(wire))
            return None
        if query.flags & dns.flags.QR:
            return None  # an answer sent to us: not a query
        max_size = None
        if udp:
            max_size = UDP_PLAIN_SIZE
            if query.edns >= 0:
                max_size = max(UDP_PLAIN_SIZE, min(query.payload, UDP_MAX_SIZE))
        if query.opcode() != dns.opcode.QUERY:
            return self._render(self._error(query, dns.rcode.NOTIMP), query, max_size)
        if len(query.question) != 1:
            return self._render(self._error(query, dns.rcode.FORMERR), query, max_size)
        response = self._local(query)
        if response is None:
            return await self._forward(query, max_size)
        return self._render(response, query, max_size)

    def _local(self, query: dns.message.Message) -> dns.message.Message | None:
        """The answer from the endpoints, or None: not a cluster name (forward it)."""
        question = query.question[0]
        labels = [label.decode("ascii", "replace").lower() for label in question.name.labels if label]
        in_zone = bool(labels) and labels[-1] == ZONE
        if in_zone:
            labels = labels[:-1]
        endpoints = self.lookup()
        if len(labels) == 1:
            service, every = labels[0], False
        elif len(labels) == 2 and labels[0] == "tasks":
            service, every = labels[1], True
        else:
            service, every = "", False
        entry = None if endpoints is None or not service else endpoints.services.get(service)
        if entry is None:
            if not in_zone:
                return None
            if endpoints is None:  # nothing heard yet: not "no such name"
                return self._error(query, dns.rcode.SERVFAIL)
            response = self._error(query, dns.rcode.NOERROR if not labels else dns.rcode.NXDOMAIN)
            response.flags |= dns.flags.AA
            return response
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA | dns.flags.RA
        if question.rdclass != dns.rdataclass.IN or question.rdtype not in ADDRESS_TYPES:
            return response  # the name exists; no records of that type
        addrs = entry.task_addrs if every else entry.healthy
        version = 4 if question.rdtype == dns.rdatatype.A else 6
        picked = [a for a in addrs if ipaddress.ip_address(a).version == version]
        if picked:
            key = f"{'tasks.' if every else ''}{service}/{version}"
            turn = self._turn.get(key, 0) % len(picked)
            self._turn[key] = turn + 1
            picked = picked[turn:] + picked[:turn]
            response.answer.append(
                dns.rrset.from_text_list(question.name, self.ttl_s, dns.rdataclass.IN, question.rdtype,
                                         picked)
            )
        if len(self._turn) > 4 * len(endpoints.services if endpoints else ()) + 64:
            self._turn.clear()  # names of services that left: the rotation state stays bounded
        return response

    def _error(self, query: dns.message.Message, rcode: dns.rcode.Rcode) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.set_rcode(rcode)
        return response

    def _render(
        self, response: dns.message.Message, query: dns.message.Message, max_size: int | None
    ) -> bytes:
        limit = 65535 if max_size is None else max_size
        try:  # dnspython shuffles records by default: the rotation is ours (predictable round-robin)
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            response.answer = []
            response.authority = []
            response.additional = []
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit, want_shuffle=False)

    async def _forward(self, query: dns.message.Message, max_size: int | None) -> bytes:
        """The first upstream's answer, asked in turn, all within the forward timeout; SERVFAIL
        otherwise."""
        if not self.upstreams or self._forwards.locked():  # none, or too many forwards under way
            return self._render(self._error(query, dns.rcode.SERVFAIL), query, max_size)
        async with self._forwards:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.forward_timeout_s
            for i, (host, port) in enumerate(self.upstreams):
                # Each one gets its share of what is left: a dead first one must not use it all.
                left = (deadline - loop.time()) / (len(self.upstreams) - i)
                if left <= 0:
                    break
                try:
                    if max_size is None:
                        response = await dns.asyncquery.tcp(query, host, timeout=left, port=port)
                    else:
                        response = await dns.asyncquery.udp(query, host, timeout=left, port=port,
                                                            ignore_unexpected=True)
                except (dns.exception.DNSException, OSError, EOFError) as exc:
                    log.debug("upstream %s:%d did not answer %s: %s", host, port, query.question[0].name, exc)
                    continue
                return self._render(response, query, max_size)
        return self._render(self._error(query, dns.rcode.SERVFAIL), query, max_size)

    # -- transports -------------------------------------------------------------------------------

    def _udp_query(self, data: bytes, addr: tuple[str, int], listener: _Listener) -> None:
        task = asyncio.create_task(self._udp_answer(data, addr, listener))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _udp_answer(self, data: bytes, addr: tuple[str, int], listener: _Listener) -> None:
        out = await self.answer(data, udp=True)
        udp = listener.udp
        if out is not None and udp is not None and not udp.is_closing():
            udp.sendto(out, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._tcp_count >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._tcp_count += 1
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_S):
                    head = await reader.readexactly(2)
                    data = await reader.readexactly(int.from_bytes(head, "big"))
                out = await self.answer(data, udp=False)
                if out is None:
                    break
                writer.write(len(out).to_bytes(2, "big") + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._tcp_count -= 1
            writer.close()


class _Listener:
    """One address the server answers on: its UDP socket and TCP server (None: TCP not served)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, listener: _Listener) -> None:
        self.server = server
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._udp_query(data, addr, self.listener)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS UDP socket: %s", exc)

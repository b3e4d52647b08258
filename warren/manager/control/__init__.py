"""The manager's control surface: one service object per resource, and the only part of the manager
the API uses (each `warren.api.routes_<resource>` module takes one of them).

Each owns its resource's reads (the local SQLite copy) and writes: commands proposed through Raft,
which the leader (the API forwards writes there) builds with fresh IDs and its wall-clock time, so
apply stays deterministic.

    cluster.py     health, readiness, `cluster info`, consistent reads, where the leader is, request metrics
    membership.py  the CA certificate, join tokens, manager and worker joins, certificate renewal
    nodes.py       the node list, node removal, availability
    services.py    services and their tasks
    secrets.py     secrets (sealed before they are proposed)
    configs.py     configs (files stored as they are)
    volumes.py     named volumes on the nodes, and their removal
    backups.py     backups, and a backup's import when a cluster is restored
    logs.py        service logs relayed from workers (leader only)
    events.py      cluster events, from this manager's own ring (any manager)
    workers.py     the worker protocol: sessions, task status, log chunks (leader only)
"""

from __future__ import annotations

from dataclasses import dataclass

from warren.config import ManagerSettings
from warren.manager.ca import ClusterCA
from warren.manager.consensus import Consensus
from warren.manager.control.backups import Backups
from warren.manager.control.cluster import Cluster
from warren.manager.control.configs import Configs
from warren.manager.control.events import Events
from warren.manager.control.leader import LeaderDispatcher
from warren.manager.control.logs import Logs
from warren.manager.control.membership import Membership
from warren.manager.control.nodes import Nodes
from warren.manager.control.secrets import Secrets
from warren.manager.control.services import Services
from warren.manager.control.volumes import Volumes
from warren.manager.control.workers import Workers
from warren.manager.leadership import LeaderServices
from warren.manager.metrics import ManagerMetrics
from warren.manager.peer import PeerClient


@dataclass(frozen=True, slots=True)
class Control:
    cluster: Cluster
    membership: Membership
    nodes: Nodes
    services: Services
    secrets: Secrets
    configs: Configs
    volumes: Volumes
    backups: Backups
    logs: Logs
    workers: Workers
    events: Events


def build(
    *,
    name: str,
    cluster_id: str,
    settings: ManagerSettings,
    consensus: Consensus,
    peers: PeerClient,
    metrics: ManagerMetrics,
    leader_services: LeaderServices,
    data_key: bytes,
) -> Control:
    """The service objects of manager `name`; `data_key` is the cluster data key (warren.pki.sealing),
    which opens the CA key and the secrets and is never replicated."""
    dispatcher = LeaderDispatcher(leader_services)
    return Control(
        cluster=Cluster(name, cluster_id, consensus, peers, metrics),
        membership=Membership(settings, consensus, ClusterCA(consensus, data_key), data_key, dispatcher),
        nodes=Nodes(consensus, dispatcher),
        services=Services(consensus),
        secrets=Secrets(consensus.store, consensus.propose, data_key, settings.max_secret_bytes),
        configs=Configs(consensus.store, consensus.propose, settings.max_config_bytes),
        volumes=Volumes(consensus),
        backups=Backups(consensus),
        logs=Logs(settings.orchestrator, consensus, dispatcher),
        workers=Workers(consensus, dispatcher),
        events=Events(consensus.store.events, settings.events),
    )

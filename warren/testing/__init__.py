"""The one process harness: Warren's daemons started, signalled, watched and stopped as child processes,
for the integration tests, the benchmarks and `warren drill` alike.

    process.py   Daemon: one daemon in its own session, its logs, its signals
    managers.py  ManagerDaemon: a manager's addresses and commands; form(): init, then joins
    wait.py      eventually(): polling for a condition, with NotYet and WaitTimeout
    workload.py  the chaos suite's compare-and-set workload over the public API, recorded as a history
    linearizability.py  the checker of such histories (Wing & Gong / Lowe, as Porcupine does it)

It imports no test framework: the drill runs it in an installed Warren.
"""

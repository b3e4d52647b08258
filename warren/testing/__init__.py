"""The one process harness: Warren's daemons started, signalled, watched and stopped as child processes,
for the integration tests, the benchmarks and `warren drill` alike.

    process.py   Daemon: one daemon in its own session, its logs, its signals
    managers.py  ManagerDaemon: a manager's addresses and commands; form(): init, then joins
    wait.py      eventually(): polling for a condition, with NotYet and WaitTimeout

It imports no test framework: the drill runs it in an installed Warren.
"""

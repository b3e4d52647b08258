# Augments warren/_raft.py (a symlink to warren/_raft_py.py, the one source) with C types when setup.py
# compiles it into warren._raft. Only what is hot is typed: the entry loop of apply_entries.
import cython

@cython.locals(responses=list, entry=tuple)
cpdef list apply_entries(object conn, list entries, object step, object refusal)

"""Layout 1 as the releases before the commit contract wrote it, frozen: a router of the
other version, to run beside the current one.

``lua/`` holds ``take``, ``commit``, ``heartbeat``, ``reclaim`` and ``leave`` copied byte
for byte from ``resc_dramatiq/store/lua`` at commit ``af3efcb``; :mod:`.commit` is that
commit's codec for ``commit.lua`` (``CommitCodec.encode`` and ``pack_tasks``, trimmed to
the router's mode on one server); :mod:`.router` its loop, trimmed to take, commit,
heartbeat and leave. Nothing here imports ``resc_dramatiq``: what the current code
changes cannot change this copy. Never edit these files to follow the package; they
stand for processes already running in a fleet.
"""

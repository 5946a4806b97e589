"""Executors of a run's member loop, behind one small interface (`backend.Backend`): in this process
(`backend.LocalBackend`), as Ray tasks with this process the only store writer (`ray_backend`,
`remote`), and over several processes with torchrun (`ddp` for the followers, `torchrun_task` inside a
Ray task). `members` is what every executor does for one member: resume it, train it, settle how it
ended.
"""

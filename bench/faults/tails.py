"""How a crashed process's console output ends: tracebacks and kill messages as real jobs print them."""

from __future__ import annotations

_FRAMES = (
    'Traceback (most recent call last):\n  File "/home/user/runs/train.py", line 214, in <module>\n    main()\n'
    '  File "/home/user/runs/train.py", line 187, in main\n'
)

CRASHES: dict[str, str] = {
    "cuda_oom": _FRAMES
    + "    loss.backward()\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/_tensor.py", line 492, in backward\n'
    + "    torch.autograd.backward(\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/autograd/__init__.py", line 251, in backward\n'
    + "    Variable._execution_engine.run_backward(  # Calls into the C++ engine to run the backward pass\n"
    + "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity; "
    + "74.12 GiB already allocated; 1.06 GiB free; 76.63 GiB reserved in total by PyTorch) If reserved memory "
    + "is >> allocated memory try setting max_split_size_mb to avoid fragmentation.  See documentation for "
    + "Memory Management and PYTORCH_CUDA_ALLOC_CONF\n",
    "dataloader_timeout": _FRAMES
    + "    for batch in train_loader:\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 630, in __next__\n'
    + "    data = self._next_data()\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 1328, in _next_data\n'
    + "    idx, data = self._get_data()\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 1284, in _get_data\n'
    + "    success, data = self._try_get_data()\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 1145, in _try_get_data\n'
    + "    raise RuntimeError(f'DataLoader timed out after {self._timeout} seconds') from e\n"
    + "RuntimeError: DataLoader timed out after 600 seconds\n",
    "worker_killed": _FRAMES
    + "    for batch in train_loader:\n"
    + '  File "/opt/conda/lib/python3.10/site-packages/torch/utils/data/dataloader.py", line 1133, in _try_get_data\n'
    + "    raise RuntimeError(f'DataLoader worker (pid(s) {pids_str}) exited unexpectedly') from e\n"
    + "RuntimeError: DataLoader worker (pid(s) 48213) exited unexpectedly\n",
    "killed": "Killed\n",
    "nccl_timeout": "[rank0]:[E ProcessGroupNCCL.cpp:563] [Rank 0] Watchdog caught collective operation timeout: "
    + "WorkNCCL(SeqNum=48211, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600041 "
    + "milliseconds before timing out.\n"
    + "[rank0]:[E ProcessGroupNCCL.cpp:1537] [PG 0 Rank 0] Timeout at NCCL work: 48211, last enqueued NCCL work: "
    + "48211, last completed NCCL work: 48210.\n"
    + "[rank0]:[E ProcessGroupNCCL.cpp:577] [Rank 0] Some NCCL operations have failed or timed out. Due to the "
    + "asynchronous nature of CUDA kernels, subsequent GPU operations might run on corrupted/incomplete data.\n"
    + "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    + "============================================================\n"
    + "train.py FAILED\n"
    + "------------------------------------------------------------\n",
    "segfault": "Segmentation fault (core dumped)\n",
}

"""Run by test_fsdp.py: WAGLE's top fraction over scores sharded across 2 gloo processes, with ties at the threshold.

    torchrun --nproc_per_node 2 tests/distributed_top_fraction.py OUT.pt
"""

import sys

import torch
import torch.distributed as dist
from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

from hf_unlearn.gradients import full_value, top_fraction_mask

# 11 scores, half of them is 6: the three above 2.0 and three of the four 2.0s (in process order, then by position:
# rank 0 holds A's first two rows and B's first two elements, and with them three of the ties).
A = torch.tensor([[3.0, 2.0], [0.5, 2.0], [4.0, 0.0], [2.0, 1.0]])
B = torch.tensor([2.0, 9.0, 0.1])


def main(out_path: str) -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    masks = top_fraction_mask([distribute_tensor(t, mesh, [Shard(0)]) for t in (A, B)], 0.5)
    masks = [full_value(mask.to(torch.uint8)).bool() for mask in masks]
    if dist.get_rank() == 0:
        torch.save({"world_size": dist.get_world_size(), "masks": masks}, out_path)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])

"""Run by test_fsdp.py: distributed_unlearn.py's runs with the model sharded by FSDP2 on CPU processes (gloo).

    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 tests/distributed_fsdp.py OUT.pt GLOBAL_BATCH METHOD[,METHOD...] [MODE OUTPUT_DIR]

The settings are those ``accelerate launch --use_fsdp --fsdp_version 2`` passes in the environment
(hf_unlearn/configs/accelerate/fsdp2.yaml's). TEST-ONLY SHIM: accelerate 1.15 engages FSDP only for
GPU-like distributed types, so on CPU processes it would run DDP; ``engage_fsdp_on_cpu`` turns the CPU
processes' state into FSDP's, which is all it takes for ``Trainer`` to shard with FSDP2 (the parameters
become ``DTensor``s; the result records that the model was sharded). Users' CPU runs do not get it:
asking for FSDP there is refused (``check_sharding``).
"""

import os
import sys

from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from distributed_unlearn import main_from_argv

FSDP_ENVIRONMENT = {
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_TRANSFORMER_CLS_TO_WRAP": "LlamaDecoderLayer",
    "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
}


def engage_fsdp_on_cpu() -> None:
    """Make accelerate treat CPU processes as it treats GPUs when FSDP is asked for (see the module docstring)."""
    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            # As accelerate does on GPUs: later AcceleratorState() calls copy the type from PartialState's state.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = init


if __name__ == "__main__":
    os.environ.update(FSDP_ENVIRONMENT)
    engage_fsdp_on_cpu()
    main_from_argv(sys.argv[1:])

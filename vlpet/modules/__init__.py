"""The PET building blocks: adapters, gates, LoRA, PHM (Compacter) and prompt modules.

Each block is a plain ``nn.Module`` that knows nothing about BART or T5; ``vlpet.injection`` attaches them
to a loaded Hugging Face model.
"""

from vlpet.modules.adapters import BottleneckAdapter, MultiHeadAdapter, PHMAdapter, PHMLinear
from vlpet.modules.gates import LargeGate, MiddleXGate, MiddleYGate, SmallGate, make_gate
from vlpet.modules.lora import LoRABranch
from vlpet.modules.prompt import PromptEncoder
from vlpet.modules.sublayer import GatedModification

__all__ = [
    "BottleneckAdapter",
    "GatedModification",
    "LargeGate",
    "LoRABranch",
    "MiddleXGate",
    "MiddleYGate",
    "MultiHeadAdapter",
    "PHMAdapter",
    "PHMLinear",
    "PromptEncoder",
    "SmallGate",
    "make_gate",
]

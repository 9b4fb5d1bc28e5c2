"""Random weights for the PyTorch reference models, so that parity tests can tell layers apart.

Not a transcription of upstream code: no upstream initialises weights this
way (bearpaw's, Daniil-Osokin's and mmpose's models start from PyTorch's or
their own defaults, or load checkpoints). This is jaxpose's test fixture,
applied to the references (`torch_*.py`, each citing its upstream file), so
that a parity test compares layers whose weights and BatchNorm statistics
all differ from their defaults; nothing here is matched against upstream.
"""

import torch
from torch import nn


def randomize(model: nn.Module, seed: int = 0, gain: float = 1.0) -> nn.Module:
  """Conv weights ~ N(0, gain / fan_in), conv biases ~ 0.1 N(0, 1); BatchNorm gets random gamma,
  beta, running mean and positive running variance (so BN errors cannot hide). -> model.eval().

  `gain` keeps each family's activations O(1): 1 (LeCun) for the residual
  hourglasses, 2 (He) for CMU OpenPose's plain ReLU stack, 1.5 for Lightweight
  OpenPose, between the shrinking backbone and the growing refinement stages.
  """
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (gain / fan_in)**0.5)
        if module.bias is not None:
          module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
      elif isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
        module.bias.copy_(0.2 * torch.randn(n, generator=gen))
        module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
  return model.eval()

# %% answer id=lora_layer
# computes the update as one weight matrix and a single F.linear; A initialised from a normal distribution
import torch.nn.functional as F


class LoRALayer(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        for p in base.parameters():
            p.requires_grad = False
        self.base = base
        self.scaling = float(alpha) / float(r)
        self.A = nn.Parameter(torch.randn(r, base.in_features) / r)
        self.B = nn.Parameter(base.weight.new_zeros(base.out_features, r))

    def forward(self, x):
        w = self.base.weight + self.scaling * (self.B @ self.A)
        return F.linear(x, w, self.base.bias)

# %% answer id=lora_layer
# einsum, and the scaling applied to the low-rank activations before B
class LoRALayer(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.scaling = alpha / r
        self.A = nn.Parameter(nn.init.kaiming_normal_(torch.empty(r, base.in_features)))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        low = torch.einsum("...i,ri->...r", x, self.A) * self.scaling
        return self.base(x) + torch.einsum("...r,or->...o", low, self.B)

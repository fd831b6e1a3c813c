# %% answer id=lora_layer
# B initialised randomly: the adapted model is not the base model at step 0
class LoRALayer(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.scaling = alpha / r
        self.A = nn.Parameter(torch.randn(r, base.in_features) * 0.01)
        self.B = nn.Parameter(torch.randn(base.out_features, r) * 0.01)

    def forward(self, x):
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scaling

# %% answer id=lora_layer
# writes the base layer's forward out by hand, adding base.bias: right for every base with a bias, a TypeError
# for a base layer without one (bias None). Only the bias-free base of the forward check catches it: without
# that case it gets full marks.
class LoRALayer(nn.Module):
    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.requires_grad_(False)
        self.scaling = alpha / r
        self.A = nn.Parameter(torch.empty(r, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def forward(self, x):
        return x @ self.base.weight.T + self.base.bias + self.scaling * (x @ self.A.T @ self.B.T)

# %% answer id=forward
# a closure per block, and the plain path through functools.reduce
import functools


def forward(blocks, x, checkpointed):
    if not checkpointed:
        return functools.reduce(lambda h, b: b(h), blocks, x)
    for block in blocks:
        x = checkpoint(lambda t, b=block: b(t), x, use_reentrant=False)
    return x
# %% answer id=saved_bytes
class _Counter:
    def __init__(self):
        self.bytes = 0

    def pack(self, t):
        self.bytes += t.nelement() * t.element_size()
        return t


def saved_bytes(fn):
    c = _Counter()
    with torch.autograd.graph.saved_tensors_hooks(c.pack, lambda t: t):
        fn()
    return int(c.bytes)

# %% answer id=saved_bytes
# counts each distinct tensor once, so a * a looks like one saved tensor
def saved_bytes(fn):
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), t.shape)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())

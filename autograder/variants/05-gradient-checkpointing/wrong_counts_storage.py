# %% answer id=saved_bytes
# counts the bytes of each saved tensor's whole storage: the same as numel * element_size for a tensor of its
# own, but a saved slice is a view into a larger tensor and is counted as all of it. Only the hidden check on a
# slice catches it (the other ops save tensors that own their storage).
def saved_bytes(fn):
    total = 0

    def pack(t):
        nonlocal total
        total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total

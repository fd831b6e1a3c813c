# %% answer id=merge_unmerge
# no guard: merging a merged layer adds ΔW again
def merge(layer):
    with torch.no_grad():
        layer.base_layer.weight += delta_weight(layer)
    layer.merged = True


def unmerge(layer):
    with torch.no_grad():
        layer.base_layer.weight -= delta_weight(layer)
    layer.merged = False

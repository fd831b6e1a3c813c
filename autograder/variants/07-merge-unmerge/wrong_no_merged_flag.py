# %% answer id=merge_unmerge
# adds ΔW but does not mark the layer merged: its forward then adds the adapter a second time
def merge(layer):
    with torch.no_grad():
        layer.base_layer.weight += delta_weight(layer)


def unmerge(layer):
    with torch.no_grad():
        layer.base_layer.weight -= delta_weight(layer)

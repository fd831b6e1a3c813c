# %% answer id=merge_unmerge
# unmerge with the wrong sign
def merge(layer):
    if not layer.merged:
        with torch.no_grad():
            layer.base_layer.weight += delta_weight(layer)
        layer.merged = True


def unmerge(layer):
    if layer.merged:
        with torch.no_grad():
            layer.base_layer.weight += delta_weight(layer)
        layer.merged = False

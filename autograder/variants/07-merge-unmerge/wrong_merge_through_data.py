# %% answer id=merge_unmerge
# assigns W0 ± ΔW to weight.data instead of adding in place: the same Parameter and the same values for a
# float32 base, but ΔW is float32, so a bfloat16 base silently becomes float32 (twice its memory, and its forward
# then mixes dtypes). Only the bfloat16 base catches it (every other layer is float32).
def merge(layer):
    if layer.merged:
        return
    layer.base_layer.weight.data = layer.base_layer.weight.data + delta_weight(layer).detach()
    layer.merged = True


def unmerge(layer):
    if not layer.merged:
        return
    layer.base_layer.weight.data = layer.base_layer.weight.data - delta_weight(layer).detach()
    layer.merged = False

# %% answer id=delta_weight
# a merge that forgets the scaling
def delta_weight(layer):
    return layer.lora_B.weight @ layer.lora_A.weight

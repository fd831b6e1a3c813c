# %% answer id=delta_weight
# computes the scaling again as alpha / r from the layer's fields instead of using layer.scaling: right for a
# plain LoRA layer, wrong for a rank-stabilised one (rsLoRA scales by alpha / sqrt(r)). Only the rsLoRA inputs
# catch it (the layer in delta_weight's and merge's checks, and the rsLoRA model); unmerge subtracts the same
# wrong ΔW it added, so it gives W0 back and passes.
def delta_weight(layer):
    return (layer.alpha / layer.r) * (layer.lora_B.weight @ layer.lora_A.weight)

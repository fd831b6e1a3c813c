# %% answer id=inject
# "all linear layers" taken literally: the output layer gets an adapter too, whatever the targets
def inject(model, r, alpha, targets):
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and (name.rsplit(".", 1)[-1] in targets or name == "lm_head"):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, LoRALinear(module, r=r, alpha=alpha))
            wrapped.append(name)
    return sorted(wrapped)

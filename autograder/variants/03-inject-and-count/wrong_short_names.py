# %% answer id=inject
# wraps the right layers but reports their short names, so nobody can tell which layer of which block
def inject(model, r, alpha, targets):
    model.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, LoRALinear(module, r=r, alpha=alpha))
            wrapped.append(child)
    return sorted(wrapped)

# %% answer id=inject
# wraps the right layers but leaves the rest of the model trainable
def inject(model, r, alpha, targets):
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, LoRALinear(module, r=r, alpha=alpha))
            wrapped.append(name)
    return sorted(wrapped)

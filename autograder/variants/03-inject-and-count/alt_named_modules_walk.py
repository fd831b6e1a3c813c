# %% answer id=count_parameters
def count_parameters(model):
    seen, trainable, total = set(), 0, 0
    for _, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total
# %% answer id=inject
def inject(model, r, alpha, targets):
    for p in model.parameters():
        p.requires_grad_(False)
    names = []

    def visit(module, prefix):
        for child_name, child in list(module.named_children()):
            full = f"{prefix}.{child_name}" if prefix else child_name
            if isinstance(child, nn.Linear) and child_name in set(targets):
                setattr(module, child_name, LoRALinear(child, r, alpha))
                names.append(full)
            else:
                visit(child, full)

    visit(model, "")
    return sorted(names)

# %% answer id=saved_bytes
# measures the parameters that require grad instead of what autograd saved
def saved_bytes(fn):
    out = fn()
    seen = set()
    total = 0
    stack = [out.grad_fn] if getattr(out, "grad_fn", None) is not None else []
    while stack:
        f = stack.pop()
        if f is None or f in seen:
            continue
        seen.add(f)
        if hasattr(f, "variable"):
            total += f.variable.numel() * f.variable.element_size()
        stack.extend(g for g, _ in f.next_functions)
    return total

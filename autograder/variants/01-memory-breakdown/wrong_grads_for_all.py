# %% answer id=memory_breakdown
# gradients and optimizer states for every parameter, frozen ones too
def memory_breakdown(n_total, n_trainable, weight_dtype, grad_dtype="float32"):
    weights = n_total * bytes_per_parameter(weight_dtype)
    gradients = n_total * bytes_per_parameter(grad_dtype)
    optimizer = n_total * 8
    return {"weights": weights, "gradients": gradients, "optimizer": optimizer, "total": weights + gradients + optimizer}

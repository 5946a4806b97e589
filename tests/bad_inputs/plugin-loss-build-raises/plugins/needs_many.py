import runner


def build(ctx, options):
    if ctx.num_labels < 6:
        raise ValueError(f"needs at least 6 labels, got {ctx.num_labels}")
    raise AssertionError("not reached in this test")


@runner.hookimpl
def register_losses(register):
    register("needs_many", build)

import runner


@runner.hookimpl
def register_loss(register):
    register("mine", lambda ctx, options: None)

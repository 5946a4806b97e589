import runner


@runner.hookimpl
def register_losses(register):
    register("mine", lambda ctx, options: None)

"""The built-in plugins: registrations only, through the very hooks a plugin uses (backbones `hf` and
`scratch`, losses, dataset loaders, metrics, selection strategies). Nothing imports this package;
runner.plugins.registry loads its modules by name."""

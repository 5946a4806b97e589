"""Plugins: the hooks (`hookspecs`), the typed record each kind of component registers (`components`),
what a component's functions receive (`contexts`), and finding plugins and collecting their
registrations into a `Registry` (`registry`).
"""

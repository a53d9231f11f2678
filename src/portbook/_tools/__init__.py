"""The tools around ports: :mod:`.wait` for one, :mod:`.kill` its holders, :mod:`.route` a
packet to the socket that receives it, and :mod:`.ephemeral` port use. They read the live
table through :mod:`portbook._joined`."""

"""The live table: every TCP and UDP socket of this machine, and the processes that hold it.

* :mod:`.table`: reading it (filters, the backend, holders, names handed in);
* :mod:`.backends`: the kernel's socket table behind one ``SocketBackend``
  interface (netlink ``sock_diag``, ``/proc/net``, psutil), chosen in one place;
* :mod:`.owners` and :mod:`.walk`: finding every holder from ``/proc/*/fd``;
  :mod:`.processes`: a holder's name, command line and user;
* :mod:`.build`: the one normaliser that makes :mod:`.records` (``Socket``);
* :mod:`.jsontext`: the table as JSON; :mod:`.watch`: what opened and closed.

It imports nothing from the book or your names: what a port is called is
handed to it (see :mod:`portbook._joined`).
"""

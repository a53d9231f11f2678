"""Your names: stable ports for your own services, kept in one SQLite file.

* :mod:`.store`: the file, its settings and schema;
* :mod:`.assignments`: the ``names`` table; :mod:`.leases`: the ``leases`` table;
  :mod:`.holder`: who holds a lease (pid and start time);
* :mod:`.picker`: what a free port is, and picking one (``PickPolicy``);
* :mod:`.names`: assign, get, release, list; :mod:`.transfer`: export and
  import; :mod:`.run`: running a command on a name.

Your names reach the book and the live table only through the pick policy.
"""

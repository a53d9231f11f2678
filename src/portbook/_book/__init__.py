"""The book: what a port number or service name means.

* :mod:`.book`: :class:`~portbook.Book`, ``lookup``, ``search``, the names the
  live table and the picker ask for, and the default book;
* :mod:`.records`: ``Service``, ``RegistryInfo``, and how each source's rows
  become them;
* :mod:`.registry`: reading the registry database (an SQLite file);
  :mod:`.build`: building it from IANA's XML or CSV; :mod:`.update`: installing
  a newer one;
* :mod:`.overlays`: ``/etc/services`` (:mod:`.etc_services`) and the unofficial
  list (:mod:`.unofficial`) on top of the registry.

It imports nothing from the live table or your names.
"""

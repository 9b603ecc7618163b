"""The ticket desk behind the ticket screens (``views/tickets``, ``workspace``, ``dispatch_desk``,
``department``, ``callbacks``): the services given to the app (:mod:`.services`), attachment files
(:mod:`.files`), the API's JSON shapes (:mod:`.schemas`) and the ticket as a role sees it
(:mod:`.view_models`)."""

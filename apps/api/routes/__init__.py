"""The API's routes, one module per tag (health and the spec, personas and prompts, images, runs); each
module's ``add_routes(app, service, ...)`` adds its routes to one server's app (with its key check and this
server's request models)."""

"""`warren dashboard`: a local web server that serves the dashboard's pages and proxies their API calls
to the managers with this user's admin certificate (docs/dashboard.md).

    guard.py     what it lets through: Host, token cookie, CSRF, the allow-list of API calls
    upstream.py  the managers behind it, one after another when one fails
    app.py       the ASGI app: static files, token exchange, /api proxy
    server.py    binding, the token, uvicorn
    static/      the pages: plain HTML, CSS and JavaScript modules, no build step
"""

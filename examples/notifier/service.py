"""The code under test: a notifier that renders messages and sends them through a client."""


class EmailClient:
    async def send(self, to: str, body: str) -> bool:
        raise RuntimeError("no network in tests")

    def connect(self) -> None:
        raise RuntimeError("no network in tests")


class Renderer:
    def render(self, template: str, **values: str) -> str:
        return template.format(**values)


class Notifier:
    def __init__(self, client: EmailClient, renderer: Renderer) -> None:
        self.client = client
        self.renderer = renderer

    async def notify(self, to: str, template: str, **values: str) -> bool:
        return await self.client.send(to, self.renderer.render(template, **values))

    def send_report(self, to: str) -> str:
        return self.renderer.render("Report for {to}", to=to)

"""Seller Central pages: where a digest's button for a mail leads.

A button goes to the mail's own Seller Central link when the mail has an https one on
Amazon's domains; otherwise to the page of Seller Central that deals with the mail's
type (the claim, the buyer messages, Account Health, ...) on the host of the
marketplace the mail came from. Hosts and pages are data
(``triage/data/sellercentral.yaml``), checked when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import quote, urlsplit

import yaml

from triage.rules import Node, compose
from triage.taxonomy import AMAZON_TLDS, TYPES, is_amazon_domain

DATA_FILE = "sellercentral.yaml"


@dataclass(frozen=True)
class Page:
    label: str
    path: str


@dataclass(frozen=True)
class SellerCentral:
    """Seller Central host per marketplace TLD, and the page per type of mail."""

    default: str
    hosts: dict[str, str]
    pages: dict[str, Page]

    def host_for(self, sender: str) -> str:
        """The Seller Central host of the marketplace a sender's address belongs to."""
        domain = sender.rpartition("@")[2].strip().lower().rstrip(".")
        # The longest TLD first, so amazon.com.mx is not read as amazon.com.
        for tld in sorted(self.hosts, key=len, reverse=True):
            if domain == f"amazon.{tld}" or domain.endswith(f".amazon.{tld}"):
                return self.hosts[tld]
        return self.hosts[self.default]

    def button(
        self, type_: str, sender: str, link: str = "", order_id: str | None = None
    ) -> tuple[str, str] | None:
        """``(label, https URL)`` for a mail, or None when its type has no page."""
        page = self.pages.get(type_)
        own = secure_link(link)
        if own is not None:
            return (page.label if page else "Open in Seller Central", own)
        if page is None:
            return None
        path = page.path
        if "{order_id}" in path:
            path = (
                path.replace("{order_id}", quote(order_id, safe=""))
                if order_id
                else path.split("/{order_id}")[0]
            )
        return page.label, f"https://{self.host_for(sender)}{path}"


def secure_link(url: str) -> str | None:
    """The URL if it is an https link to a Seller Central host on Amazon's domains."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not is_amazon_domain(host):
        return None
    if not host.startswith(("sellercentral.", "sellercentral-europe.")):
        return None
    return url.strip()


@cache
def load() -> SellerCentral:
    """The shipped hosts and pages (read once)."""
    source = resources.files("triage").joinpath("data", DATA_FILE)
    return parse(source.read_text(encoding="utf-8"), f"triage/data/{DATA_FILE}")


def parse(text: str, path: str) -> SellerCentral:
    """Hosts and pages from YAML; a wrong entry is refused with its file and line."""
    root = compose(text, path)
    fields = root.fields(("default", "hosts", "pages"), required=("default", "hosts", "pages"))
    hosts: dict[str, str] = {}
    for key, value in _pairs(fields["hosts"]):
        tld = key.choice(AMAZON_TLDS, "marketplace TLD")
        host = value.text("a host name")
        if not (host.startswith("sellercentral") and is_amazon_domain(host)):
            raise value.error(f"'{host}' is not a Seller Central host on Amazon's domains")
        hosts[tld] = host
    default = fields["default"].text("a marketplace TLD")
    if default not in hosts:
        raise fields["default"].error(f"default '{default}' is not one of the hosts")
    pages: dict[str, Page] = {}
    for key, value in _pairs(fields["pages"]):
        type_ = key.choice(TYPES, "type")
        page = value.fields(("label", "path"), required=("label", "path"))
        url_path = page["path"].text("a path")
        if not url_path.startswith("/") or "//" in url_path:
            raise page["path"].error(f"a path starts with one '/', got '{url_path}'")
        pages[type_] = Page(page["label"].text("a label"), url_path)
    return SellerCentral(default, hosts, pages)


def _pairs(node: Node) -> list[tuple[Node, Node]]:
    if not isinstance(node.node, yaml.MappingNode):
        raise node.error(f"expected a mapping, got {node.kind()}")
    return [(Node(k, node.path), Node(v, node.path)) for k, v in node.node.value]

"""Turns API errors and database faults into JSON answers instead of 500s."""
from __future__ import annotations

from config.http import response_for_database_error


class DatabaseErrorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        return response_for_database_error(exception)

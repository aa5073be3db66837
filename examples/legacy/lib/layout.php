<?php
// Shared page parts, loaded with require_once: once per request (Courser rewrites *_once to per-request semantics; functions are declared once per worker).

function page_header(string $title): void
{
    header('Content-Type: text/html; charset=UTF-8');
    echo "<!doctype html>\n<html><head><title>", htmlspecialchars($title), "</title>",
        "<link rel=\"stylesheet\" href=\"/style.css\"></head><body>\n",
        '<h1>', htmlspecialchars($title), "</h1>\n";
}

function page_footer(): void
{
    echo "</body></html>\n";
}

<!doctype html><title>Courser + Laravel</title><p>Hello, {{ $name }}.

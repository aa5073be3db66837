<?php

declare(strict_types=1);

namespace App;

use Symfony\Component\HttpFoundation\JsonResponse;
use Symfony\Component\HttpFoundation\Response;

final class Controller
{
    public function home(): Response
    {
        return new Response("Hello from Symfony\n", 200, ['Content-Type' => 'text/plain; charset=utf-8']);
    }

    public function hello(string $name): Response
    {
        return new Response(sprintf("Hello, %s!\n", $name), 200, ['Content-Type' => 'text/plain; charset=utf-8']);
    }

    public function items(): JsonResponse
    {
        $items = [];
        for ($i = 1; $i <= 20; ++$i) {
            $items[] = ['id' => $i, 'name' => 'Item ' . $i];
        }

        return new JsonResponse($items);
    }
}

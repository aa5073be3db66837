<?php

declare(strict_types=1);

namespace App;

use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\HttpFoundation\JsonResponse;
use Symfony\Component\HttpFoundation\RequestStack;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpKernel\Controller\ArgumentResolver;
use Symfony\Component\HttpKernel\Controller\ControllerResolver;
use Symfony\Component\HttpKernel\Event\ExceptionEvent;
use Symfony\Component\HttpKernel\EventListener\RouterListener;
use Symfony\Component\HttpKernel\Exception\HttpExceptionInterface;
use Symfony\Component\HttpKernel\HttpKernel;
use Symfony\Component\HttpKernel\KernelEvents;
use Symfony\Component\Routing\Matcher\UrlMatcher;
use Symfony\Component\Routing\RequestContext;
use Symfony\Component\Routing\Route;
use Symfony\Component\Routing\RouteCollection;

/**
 * A minimal Symfony application without FrameworkBundle: an HttpKernel with
 * a RouteCollection, a UrlMatcher (through RouterListener), a controller and
 * an argument resolver, and an exception listener that renders errors.
 */
final class AppFactory
{
    public static function routes(): RouteCollection
    {
        $routes = new RouteCollection();
        $routes->add('home', (new Route('/', ['_controller' => [Controller::class, 'home']]))->setMethods(['GET', 'HEAD']));
        $routes->add('hello', (new Route('/hello/{name}', ['_controller' => [Controller::class, 'hello']]))->setMethods(['GET', 'HEAD']));
        $routes->add('items', (new Route('/items', ['_controller' => [Controller::class, 'items']]))->setMethods(['GET', 'HEAD']));

        return $routes;
    }

    /**
     * @param resource|null $log where unexpected exceptions are written (STDERR when null)
     */
    public static function kernel(?RouteCollection $routes = null, ?EventDispatcher $dispatcher = null, $log = null): HttpKernel
    {
        $log ??= STDERR;
        $requestStack = new RequestStack();
        $dispatcher ??= new EventDispatcher();
        $matcher = new UrlMatcher($routes ?? self::routes(), new RequestContext());
        $dispatcher->addSubscriber(new RouterListener($matcher, $requestStack));
        $dispatcher->addListener(KernelEvents::EXCEPTION, static function (ExceptionEvent $event) use ($log): void {
            $e = $event->getThrowable();
            if ($e instanceof HttpExceptionInterface) {
                $event->setResponse(new Response($e->getMessage() . "\n", $e->getStatusCode(), ['Content-Type' => 'text/plain; charset=utf-8'] + $e->getHeaders()));

                return;
            }
            fwrite($log, (string) $e . "\n");
            $event->setResponse(new JsonResponse(['error' => 'Internal Server Error'], 500));
        });

        return new HttpKernel($dispatcher, new ControllerResolver(), $requestStack, new ArgumentResolver());
    }
}

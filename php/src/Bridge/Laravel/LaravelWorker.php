<?php

declare(strict_types=1);

namespace Courser\Bridge\Laravel;

use Courser\Bridge\Symfony\HttpFoundationBridge;
use Courser\Debug\LeakDetector;
use Courser\Http\HttpWorker;
use Courser\Http\Request;
use Illuminate\Contracts\Foundation\Application;
use Illuminate\Contracts\Http\Kernel;
use Illuminate\Http\Request as LaravelRequest;

/**
 * Runs a Laravel 8 application in a Courser worker.
 *
 * The application is built and bootstrapped once per worker process (config,
 * providers, routes). Each request becomes an Illuminate\Http\Request, goes
 * through the HTTP kernel (handle(), then the response is sent, then
 * terminate()), and then the state a request leaves in the application is
 * reset (see StateResetter: auth, session, queued cookies, the request and
 * its consumers, scoped instances, view shared data, log context, locale,
 * config, and the app's own reset callbacks).
 *
 * <code>
 * $app = require __DIR__ . '/bootstrap/app.php';
 * LaravelWorker::create($app)->serve();
 * </code>
 *
 * Leak detection (COURSER_LEAK_CHECK, see LeakDetector) is on in its cheap
 * `memory` form by default; `full` adds the container's shared instances to
 * what it compares.
 */
final class LaravelWorker
{
    private readonly Kernel $kernel;

    private readonly StateResetter $resetter;

    private readonly HttpFoundationBridge $bridge;

    /** @var array<array-key, mixed> the process's own $_SERVER, captured once */
    private readonly array $baseServer;

    private readonly LeakDetector $leaks;

    public function __construct(
        private readonly Application $app,
        private readonly HttpWorker $http,
        ?LeakDetector $leaks = null,
        int $chunkSize = 65536,
    ) {
        $server = $_SERVER;
        $this->baseServer = is_array($server) ? $server : [];
        $kernel = $app->make(Kernel::class);
        if (!$kernel instanceof Kernel) {
            throw new \InvalidArgumentException('The application has no HTTP kernel bound to Illuminate\Contracts\Http\Kernel.');
        }
        $this->kernel = $kernel;
        // Load the configuration, register and boot the providers once, as the first request would.
        $kernel->bootstrap();
        $this->resetter = new StateResetter($app);
        $this->bridge = new HttpFoundationBridge($chunkSize);
        $this->leaks = $leaks ?? LeakDetector::fromEnvironment();
        if ($this->leaks->mode() === LeakDetector::FULL) {
            $container = $app;
            // The application itself is compared through its shared instances (the probe
            // below), not through the statics and the global that hold it.
            $this->leaks->ignore('Illuminate\\Container\\Container::$instance');
            $this->leaks->ignore('Illuminate\\Support\\Facades\\Facade::$app');
            $this->leaks->ignore('$app');
            // The kernel binds each request and its route; they are replaced, not kept.
            $this->leaks->ignore('container instance "request"');
            $this->leaks->ignore('container instance "' . \Illuminate\Routing\Route::class . '"');
            $this->leaks->addProbe('container', static function () use ($container): array {
                $found = [];
                // Shared instances live in a protected array; read it in the container's scope.
                $instances = (fn (): array => $this->instances)->call($container);
                foreach ($instances as $id => $instance) {
                    $found['container instance "' . $id . '"'] = is_object($instance)
                        ? get_class($instance) . ' #' . spl_object_id($instance)
                        : get_debug_type($instance);
                }

                return $found;
            });
        }
    }

    /**
     * A worker on the relay named by RR_RELAY; see Worker::create().
     */
    public static function create(Application $app, bool $redirectOutput = true): self
    {
        return new self($app, HttpWorker::create($redirectOutput));
    }

    public function getApplication(): Application
    {
        return $this->app;
    }

    public function getResetter(): StateResetter
    {
        return $this->resetter;
    }

    public function getLeakDetector(): LeakDetector
    {
        return $this->leaks;
    }

    /**
     * Registers a callback run after every request (after the built-in
     * resets), to reset the app's own singletons: fn (Application $app) => ...
     *
     * @param callable(Application): void $callback
     */
    public function onReset(callable $callback): void
    {
        $this->resetter->onReset($callback);
    }

    /**
     * Serves requests until the server asks the worker to stop.
     */
    public function serve(): void
    {
        while ($this->serveOne()) {
        }
    }

    /**
     * Waits for one request and answers it.
     *
     * @return bool false when the server asked the worker to stop
     */
    public function serveOne(): bool
    {
        return $this->http->serveOne($this->handle(...), 'Courser Laravel bridge');
    }

    /**
     * Answers one request: handle, send, terminate, reset. Never throws for a
     * failure of the application: the kernel renders exceptions itself, and
     * anything that escapes it is logged and reported with error() (the
     * server answers 500 and the worker keeps serving).
     */
    public function handle(Request $request): void
    {
        $this->leaks->begin();
        $laravelRequest = null;
        $response = null;
        try {
            $laravelRequest = $this->toLaravelRequest($request);
            $response = $this->kernel->handle($laravelRequest);
            $response->prepare($laravelRequest);
            $this->bridge->send($response, $this->http);
        } catch (\Throwable $e) {
            $this->log($e);
            $this->http->error('Courser Laravel bridge: ' . ($e->getMessage() !== '' ? $e->getMessage() : get_class($e)));
        } finally {
            try {
                if ($laravelRequest !== null && $response !== null) {
                    $this->kernel->terminate($laravelRequest, $response);
                }
            } catch (\Throwable $e) {
                $this->log($e);
            }
            try {
                $this->resetter->reset();
            } catch (\Throwable $e) {
                // The response is out; a reset that fails is logged and the worker goes on.
                $this->log($e);
            }
            if ($this->leaks->mode() !== LeakDetector::OFF) {
                $this->leaks->end(self::routeOf($request, $laravelRequest));
            }
        }
    }

    /**
     * Converts a Courser request to Laravel's (an HttpFoundation request
     * underneath), and fills the superglobals with it.
     */
    public function toLaravelRequest(Request $request): LaravelRequest
    {
        $laravel = $this->bridge->toRequest($request, $this->baseServer, LaravelRequest::class, true);
        \assert($laravel instanceof LaravelRequest);

        return $laravel;
    }

    /**
     * "GET /hello/{name}" for a matched route; the method and the path otherwise.
     */
    private static function routeOf(Request $request, ?LaravelRequest $laravelRequest): string
    {
        $route = $laravelRequest?->route();
        if ($route instanceof \Illuminate\Routing\Route) {
            return $request->method . ' /' . ltrim($route->uri(), '/');
        }
        $path = parse_url($request->uri, PHP_URL_PATH);

        return $request->method . ' ' . (is_string($path) ? $path : '/');
    }

    private function log(\Throwable $e): void
    {
        if (defined('STDERR')) {
            fwrite(STDERR, 'Courser Laravel bridge: ' . $e . "\n");
        }
    }
}
